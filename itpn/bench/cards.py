"""Accelerator cards by name: the dense bf16 tensor-core peak each vendor states, and where it says so.

MFU (model FLOP utilisation) divides achieved FLOP/s by this stated peak, as the PaLM paper
(Chowdhery et al., 2022, appendix B) defines it, not by a ceiling measured in the same run
(``measure.matmul_peak_tflops``), which the benchmarks print beside it. NVIDIA's datasheets print
the tensor-core figures "with sparsity"; the dense peak is half of that.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Card:
    """One accelerator: ``name`` as ``--card`` takes it, ``match`` (a substring of
    ``torch.cuda.get_device_name``), the dense ``bf16_tflops`` (TFLOP/s, 10^12 FLOP/s) and its source."""

    name: str
    match: str
    bf16_tflops: float
    source: str


CARDS: dict[str, Card] = {card.name: card for card in (
    Card("H200", "H200", 989.0, "NVIDIA H200 Tensor Core GPU datasheet (SXM): BF16 Tensor Core 1,979 TFLOPS "
                                "with sparsity, 989 dense"),
    Card("H100-PCIe", "H100 PCIe", 756.0, "NVIDIA H100 Tensor Core GPU datasheet (PCIe): BF16 Tensor Core 1,513 "
                                          "TFLOPS with sparsity, 756 dense"),
    Card("H100", "H100", 989.0, "NVIDIA H100 Tensor Core GPU datasheet (SXM): BF16 Tensor Core 1,979 TFLOPS with "
                                "sparsity, 989 dense"),
    Card("A100", "A100", 312.0, "NVIDIA A100 Tensor Core GPU datasheet: BF16 Tensor Core 312 TFLOPS dense "
                                "(624 with sparsity)"),
    Card("L40S", "L40S", 362.0, "NVIDIA L40S datasheet: BF16 Tensor Core 362 TFLOPS dense (733 with sparsity)"),
    Card("V100", "V100", 125.0, "NVIDIA Tesla V100 datasheet (SXM2): no bf16; FP16 Tensor Core 125 TFLOPS, the "
                                "precision the paper's V100s trained in"),
)}


def get_card(name: str) -> Card:
    """The card called ``name`` (case-insensitive); a ValueError lists the known ones."""
    for card in CARDS.values():
        if card.name.lower() == name.lower():
            return card
    raise ValueError(f"unknown card {name!r}; the cards with a stated peak are: {', '.join(CARDS)}")


def card_of_device(device_name: str) -> Card | None:
    """The card whose ``match`` occurs in ``device_name`` (e.g. ``"NVIDIA H200"``), None when no card does
    (a CPU, or a card without a stated peak here). More specific names are tried first (H100 PCIe before H100)."""
    lowered = device_name.lower()
    return next((card for card in CARDS.values() if card.match.lower() in lowered), None)
