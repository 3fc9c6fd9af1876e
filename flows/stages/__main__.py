"""``python -m flows.stages <stage> --params FILE`` (``flows.stages.cli``)."""
import sys

from .cli import main

sys.exit(main())
