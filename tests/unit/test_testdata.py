"""The corpus helper: the repository's files always, the wider corpus's new files when present."""

from __future__ import annotations

from pathlib import Path

from tests.testdata import IN_REPO, corpus_files


def test_without_a_shared_folder_only_the_repository_corpus_is_used(tmp_path: Path) -> None:
    """A clone with nothing beside it still gets every sample of its own."""
    found = corpus_files("edxml", "*.edxml", shared=tmp_path / "absent")
    assert [f.origin for f in found] == ["repo"] * len(found)
    assert {f.path for f in found} == set(IN_REPO["edxml"].glob("*.edxml"))
    assert len(found) >= 4


def test_shared_files_are_added_unless_the_repository_holds_the_same_content(
    tmp_path: Path,
) -> None:
    """A copy of a repository sample runs once; a new sample runs, named as coming from shared."""
    own = sorted(IN_REPO["edxml"].glob("*.edxml"))
    (tmp_path / "edxml" / "more").mkdir(parents=True)
    (tmp_path / "edxml" / own[0].name).write_bytes(own[0].read_bytes())
    (tmp_path / "edxml" / "more" / "new.edxml").write_bytes(b"<edXMLEnvelope/>")
    found = corpus_files("edxml", "*.edxml", shared=tmp_path)
    assert [f.id for f in found if f.origin == "shared"] == ["shared:more/new.edxml"]
    assert len(found) == len(own) + 1
