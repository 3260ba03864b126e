"""The default gallery: LFW people with at least two photos, two each, so the Pair tab opens on a
same-person pair; a flat folder and a one-photo-per-person folder keep their old listing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cqa_core.settings import Settings
from workbench.gallery import gallery_faces, gallery_paths, partner_of, person_of


def photos_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".jpg")


def test_lfw_gallery_lists_people_with_two_photos_two_each(lfw_root):
    listed = gallery_paths(lfw_root, 5)
    assert len(listed) == 10  # 5 people x 2 photos
    folders = [path.parent for _, path in listed]
    assert folders[0] == folders[1] and folders[0] != folders[2]  # the first two entries: one person
    for (name, path), k in zip(listed, [1, 2] * 5, strict=True):
        person = path.parent
        assert len(photos_of(person)) >= 2, person  # every listed person has two photos or more
        assert name == f"{person.name.replace('_', ' ')} {k}"
        assert path == photos_of(person)[k - 1]  # the person's first and second photo, in file order
    # the people skipped on the way (sorted before the last one listed) are exactly those with one photo
    last = folders[-1].name
    before = [d for d in sorted(lfw_root.iterdir()) if d.is_dir() and d.name <= last]
    assert sorted({f.name for f in folders}) == [d.name for d in before if len(photos_of(d)) >= 2]


def test_default_gallery_is_bounded_by_people_and_opens_on_a_same_person_pair(lfw_root):
    faces = gallery_faces(Settings(faces=lfw_root, people=3))
    names = [f.name for f in faces]
    assert len(faces) == 6 and len({person_of(n) for n in names}) == 3
    assert partner_of(names[0], names) == names[1] and person_of(names[0]) == person_of(names[1])
    assert names[0].endswith(" 1") and names[1].endswith(" 2")


def test_partner_of_prefers_the_same_person_then_the_next_face():
    names = ["Ann 1", "Bob 1", "Ann 2", "Cy"]
    assert partner_of("Ann 1", names) == "Ann 2"
    assert partner_of("Ann 2", names) == "Ann 1"
    assert partner_of("Bob 1", names) == "Ann 2"  # nobody else is Bob: the next face
    assert partner_of("Cy", names) == "Ann 1"  # the last face wraps round
    assert partner_of("Cy", ["Cy"]) == "Cy"
    assert partner_of("upload: me.png", {"Ann 1": 0, "Bob 1": 1}) == "Ann 1"  # a dict gives its names
    assert person_of("Aaron Peirsol 2") == "Aaron Peirsol" and person_of("Cy") == "Cy"


def save_noise(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)


def test_one_photo_per_person_and_flat_folders_keep_their_listing(tmp_path):
    people = tmp_path / "people"
    for i in range(4):
        save_noise(people / f"Person_{i}" / f"Person_{i}_0001.jpg", i)
    assert [n for n, _ in gallery_paths(people, 3)] == ["Person 0", "Person 1", "Person 2"]
    save_noise(people / "Person_3" / "Person_3_0002.jpg", 9)  # now one person has two photos: only that one
    assert [n for n, _ in gallery_paths(people, 3)] == ["Person 3 1", "Person 3 2"]
    flat = tmp_path / "flat"
    for stem in ("b_photo", "a_photo", "c_photo"):
        save_noise(flat / f"{stem}.jpg", 0)
    assert [n for n, _ in gallery_paths(flat, 2)] == ["a photo", "b photo"]
    assert gallery_paths(tmp_path / "absent", 3) == []


def test_workbench_second_face_defaults_to_the_same_persons_other_photo(tmp_path, lfw_root, monkeypatch):
    monkeypatch.delenv("CQA_CHECKPOINT", raising=False)
    from workbench.start import open_workbench

    gallery = tmp_path / "gallery"
    gallery.mkdir()
    (gallery / ".cqa-framing").write_text("lfw")  # the centre crop: no MTCNN wait
    for person in ("AJ_Cook", "Aaron_Peirsol", "Aaron_Sorkin"):  # AJ Cook has one photo in LFW
        (gallery / person).mkdir()
        for photo in photos_of(lfw_root / person)[:2]:
            (gallery / person / photo.name).symlink_to(photo)  # linked, never copied
    wb = open_workbench(Settings(faces=gallery, people=2, torch_threads=1))
    assert list(wb.faces) == ["Aaron Peirsol 1", "Aaron Peirsol 2", "Aaron Sorkin 1", "Aaron Sorkin 2"]
    assert wb.current.name == "Aaron Peirsol 1" and wb.second.value == "Aaron Peirsol 2"
