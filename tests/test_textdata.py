"""zoo_core.textdata: the readable-text check every text task shares."""

import pytest

from zoo_core import ConfigError
from zoo_core.textdata import check_text_file, quiet_datasets


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"", "empty file"),
    (b"ok\n" * 500_000 + b"\xff\n", "undecodable byte at offset 1500000"),   # past the first 1 MiB chunk
    ("caf\u00e9".encode()[:-1], "truncated character at the end"),
])
def test_unreadable_text_is_a_one_line_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "corpus.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as err:
        check_text_file(path, field="data")
    assert str(path) in str(err.value) and err.value.field == "data" and "\n" not in str(err.value)


def test_utf8_text_passes(tmp_path):
    path = tmp_path / "ok.txt"
    path.write_text("ein Hund läuft\n" * 100_000, encoding="utf-8")
    check_text_file(path)


def test_quiet_datasets_restores_the_progress_bars():
    import datasets

    datasets.enable_progress_bars()
    with quiet_datasets() as ds:
        assert not ds.is_progress_bar_enabled()
    assert datasets.is_progress_bar_enabled()


class _FakeDatasets:
    def __init__(self, splits=None, error=None):
        self.splits, self.error = splits, error

    def load_dataset(self, data, config):
        if self.error:
            raise self.error
        return self.splits


def test_hub_splits_finds_validation_by_its_aliases_and_names_what_is_missing():
    from zoo_core.textdata import hub_splits

    fake = _FakeDatasets({"train": "T", "dev": "D", "test": "E"})
    assert hub_splits(fake, "x/y", None, what="folder", fix="f", validation=("validation", "dev")) == {
        "train": "T", "validation": "D", "test": "E"}
    with pytest.raises(ConfigError, match=r"hub dataset 'x/y' has no validation split \(has train, dev, test\)"):
        hub_splits(fake, "x/y", None, what="folder", fix="f")
    with pytest.raises(ConfigError, match=r"'x/y' is not a local folder, and loading it as a hub dataset failed "
                                          r"\(no network\).*pass a folder"):
        hub_splits(_FakeDatasets(error=OSError("no network\nmore")), "x/y", None, what="folder", fix="pass a folder")
