"""ImageNet-22K read from an index built once: every layout gives the same samples and labels, bad records
are dropped one by one and counted, the index resumes, and a dataset reads a class's list only when asked."""
import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from itpn.data.errors import LayoutError
from itpn.data.imagenet22k import ImageNet22k, build_index, detect_layout, read_counts

WNIDS = ["n00000001", "n00000002", "n00000003"]
IMAGES = {"n00000001": 3, "n00000002": 2, "n00000003": 4}


def png(wnid: str, k: int) -> bytes:
    """A 8x8 image whose pixels say which class and which image it is."""
    pixels = np.full((8, 8, 3), (int(wnid[-1]) * 40, k * 30, 7), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def class_members(wnid: str) -> list[tuple[str, bytes]]:
    members = [(f"{wnid}_{k}.png", png(wnid, k)) for k in range(IMAGES[wnid])]
    if wnid == "n00000001":  # three bad records among good ones
        members += [("README.txt", b"not an image"), ("n00000001_empty.png", b""),
                    ("n00000002_99.png", png("n00000002", 9))]
    return members


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def truncated(data: bytes, last_member: str) -> bytes:
    """The archive cut in the middle of ``last_member``'s data (a copy that stopped early)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.getmember(last_member)
    return data[:member.offset_data + member.size // 2]


def write_layout(root, kind: str):
    root.mkdir()
    archives = {wnid: tar_bytes(class_members(wnid)) for wnid in WNIDS}
    archives["n00000003"] = truncated(archives["n00000003"], "n00000003_3.png")
    if kind == "folders":
        for wnid in WNIDS:
            (root / wnid).mkdir()
            for name, data in class_members(wnid):
                if not (wnid == "n00000003" and name == "n00000003_3.png"):
                    (root / wnid / name).write_bytes(data)
    elif kind == "class_tars":
        for wnid, data in archives.items():
            (root / f"{wnid}.tar").write_bytes(data)
    else:
        (root / "fall11_whole.tar").write_bytes(tar_bytes([(f"{wnid}.tar", data) for wnid, data in archives.items()]))
    return str(root)


@pytest.mark.parametrize("kind", ["folders", "class_tars", "whole_tar"])
def test_every_layout_gives_the_same_samples_and_drops_only_the_bad_records(tmp_path, kind):
    url = write_layout(tmp_path / "in22k", kind)
    assert detect_layout(url).kind == kind
    counts = build_index(url, workers=2)

    assert counts == {"n00000001": 3, "n00000002": 2, "n00000003": 3}  # class 3: its truncated image left out
    index = json.loads((tmp_path / "in22k" / "_itpn_index" / "n00000001.json").read_text())
    reasons = {record.rsplit(":", 1)[-1].rsplit("/", 1)[-1]: why for record, why in index["dropped"]}
    assert reasons["README.txt"] == "not an image (by its extension)"
    assert reasons["n00000001_empty.png"] == "empty (0 bytes)"
    assert reasons["n00000002_99.png"].startswith("named for class n00000002, found in class n00000001")
    assert read_counts(str(tmp_path / "in22k" / "_itpn_index"))["dropped"] == (3 if kind == "folders" else 4)

    dataset = ImageNet22k(url)
    assert len(dataset) == 8 and dataset.classes == WNIDS
    for position in range(len(dataset)):
        image, label = dataset[position]
        wnid = WNIDS[label]
        k = position - sum(counts[w] for w in WNIDS[:label])
        assert np.array_equal(np.asarray(image), np.asarray(Image.open(io.BytesIO(png(wnid, k))).convert("RGB")))
    assert dataset.skipped == []


def test_a_damaged_header_keeps_the_images_before_it_and_is_counted(tmp_path):
    root = tmp_path / "in22k"
    root.mkdir()
    data = bytearray(tar_bytes(class_members("n00000002") + [("n00000002_5.png", png("n00000002", 5))]))
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as archive:
        third = archive.getmember("n00000002_5.png")
    data[third.offset:third.offset + 100] = b"\x07" * 100  # the third header overwritten
    (root / "n00000002.tar").write_bytes(bytes(data))
    assert build_index(str(root)) == {"n00000002": 2}
    [[record, why]] = json.loads((root / "_itpn_index" / "n00000002.json").read_text())["dropped"]
    assert record == "n00000002.tar:<after member 2>" and "unreadable header" in why and "2 images before it" in why


def test_the_index_resumes_and_the_dataset_reads_a_class_list_only_when_asked(tmp_path):
    url = write_layout(tmp_path / "in22k", "class_tars")
    index = tmp_path / "in22k" / "_itpn_index"
    index.mkdir()
    # a build killed after class 2: its file is kept as it is, the other classes are scanned
    (index / "n00000002.json").write_text(json.dumps({"wnid": "n00000002", "container": "n00000002.tar",
                                                      "members": [], "dropped": []}))
    assert build_index(url)["n00000002"] == 0
    assert json.loads((index / "n00000002.json").read_text())["members"] == []

    (index / "n00000003.json").unlink()  # never read until a sample of class 3 is asked for
    dataset = ImageNet22k(url)
    assert dataset[0][1] == 0
    with pytest.raises(LayoutError, match=r"n00000003.json: no index of class n00000003.*build_index"):
        dataset[len(dataset) - 1]


def test_the_hold_out_is_the_last_images_of_each_class_and_nothing_else(tmp_path):
    url = write_layout(tmp_path / "in22k", "class_tars")
    build_index(url)
    train, val = ImageNet22k(url, "train", holdout_per_class=1), ImageNet22k(url, "val", holdout_per_class=1)
    assert (len(train), len(val)) == (5, 3)
    assert [val._key(i) for i in range(3)] == ["n00000001.tar:n00000001_2.png", "n00000002.tar:n00000002_1.png",
                                               "n00000003.tar:n00000003_2.png"]
    assert not {train._key(i) for i in range(5)} & {val._key(i) for i in range(3)}
    with pytest.raises(ValueError, match="split='val' needs holdout_per_class > 0"):
        ImageNet22k(url, "val")


def test_a_folder_without_any_layout_and_an_unfinished_index_name_the_fix(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError, match=r"neither <wnid>/ folders.*fall11_whole"):
        detect_layout(str(tmp_path / "empty"))
    url = write_layout(tmp_path / "in22k", "folders")
    with pytest.raises(LayoutError, match=r"counts.json: the index is not finished.*resumes"):
        ImageNet22k(url)
