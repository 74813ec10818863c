"""Store settings: the local store's regions (TOOLTOOL_LOCAL_REGIONS), S3_REGIONS, and the
indexer's margin for late PUTs."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main as gateway_main
from indexer.cli import main as indexer_main
from indexer.config import SettingsError, StoreSettings, open_regions
from indexer.local_store import LocalStore


def local_regions(tmp_path: Path, value: str | None) -> list[LocalStore]:
    environ = {"TOOLTOOL_DATA_DIR": str(tmp_path / "data")}
    if value is not None:
        environ["TOOLTOOL_LOCAL_REGIONS"] = value
    stores = list(open_regions(StoreSettings.from_environ(environ)))
    assert all(isinstance(store, LocalStore) for store in stores)
    return stores  # type: ignore[return-value]


@pytest.mark.parametrize("value", [None, "", "  "])
def test_unset_is_one_region_at_the_data_directory(tmp_path: Path, value: str | None) -> None:
    [store] = local_regions(tmp_path, value)
    assert (store.region, store.root) == ("local", tmp_path / "data")


def test_each_region_has_a_directory_the_first_holds_the_index(tmp_path: Path) -> None:
    stores = local_regions(tmp_path, " east , west-2 ")
    assert [(store.region, store.root) for store in stores] == [
        ("east", tmp_path / "data" / "east"),
        ("west-2", tmp_path / "data" / "west-2"),
    ]
    regions = open_regions(
        StoreSettings.from_environ(
            {"TOOLTOOL_DATA_DIR": str(tmp_path / "data"), "TOOLTOOL_LOCAL_REGIONS": "east,west-2"}
        )
    )
    assert regions.index.region == "east"
    east, west = stores
    url = west.presign_get("sha512/x", expires_in=60)
    assert url.startswith("/__store__/west-2/sha512/x?")
    assert east.signer is west.signer  # one key, kept at the data directory's root


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("East", "TOOLTOOL_LOCAL_REGIONS: 'East' is not a region name"),
        ("east,,west", "TOOLTOOL_LOCAL_REGIONS: '' is not a region name"),
        ("east,", "TOOLTOOL_LOCAL_REGIONS: '' is not a region name"),
        (",", "TOOLTOOL_LOCAL_REGIONS: '' is not a region name"),
        ("east;west", "TOOLTOOL_LOCAL_REGIONS: 'east;west' is not a region name"),
        ("../up", "TOOLTOOL_LOCAL_REGIONS: '../up' is not a region name"),
        ("a-", "TOOLTOOL_LOCAL_REGIONS: 'a-' is not a region name"),
        ("x" * 64, "TOOLTOOL_LOCAL_REGIONS: 'xxxx"),
        ("east,west,east", "TOOLTOOL_LOCAL_REGIONS: region east is listed twice"),
    ],
)
def test_bad_values_are_named(value: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        StoreSettings.from_environ({"TOOLTOOL_LOCAL_REGIONS": value})
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_local_regions_and_s3_regions_do_not_mix() -> None:
    with pytest.raises(
        SettingsError, match=r"^TOOLTOOL_LOCAL_REGIONS: set together with S3_REGIONS"
    ):
        StoreSettings.from_environ(
            {"TOOLTOOL_LOCAL_REGIONS": "east", "S3_REGIONS": "us-east-1:bucket-a"}
        )


def test_regions_over_a_store_without_regions_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TOOLTOOL_LOCAL_REGIONS set on a data directory already holding files at its root
    would start both CLIs on empty regions: they refuse, saying what to do (exit 4)."""
    data = tmp_path / "data"
    tool = tmp_path / "tool.bin"
    tool.write_bytes(b"stored before regions")
    single = {"TOOLTOOL_DATA_DIR": str(data), "USER": "operator"}
    assert indexer_main(["import", "--visibility", "public", str(tool)], single) == 0
    capsys.readouterr()
    regions = {**single, "TOOLTOOL_LOCAL_REGIONS": "east,west"}
    with pytest.raises(SettingsError) as caught:
        open_regions(StoreSettings.from_environ(regions))
    message = str(caught.value)
    assert message.startswith(f"TOOLTOOL_LOCAL_REGIONS: {data} holds a store without regions")
    assert f"into {data / 'east'}/" in message
    assert "\n" not in message
    assert indexer_main(["run"], regions) == 4
    assert gateway_main([], {**regions, "PORT": "0"}) == 4
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"SettingsError: {message}"] * 2
    assert not (data / "east").exists()


def test_the_layout_check_leaves_new_data_directories_alone(tmp_path: Path) -> None:
    stores = local_regions(tmp_path, "east,west")
    stores[0].put("index/x.json", b"{}")
    assert [store.region for store in local_regions(tmp_path, "east,west")] == ["east", "west"]


def test_one_bucket_under_two_regions_is_refused() -> None:
    with pytest.raises(SettingsError) as caught:
        StoreSettings.from_environ(
            {"S3_REGIONS": "us-east-1:tools;us-west-2:other;eu-west-1:tools"}
        )
    assert str(caught.value) == (
        "S3_REGIONS: bucket tools is listed for both us-east-1 and eu-west-1;"
        " each region needs a bucket of its own"
    )


def test_the_late_put_margin_is_a_setting() -> None:
    assert StoreSettings.from_environ({}).late_put_seconds == 3600
    assert StoreSettings.from_environ({"TOOLTOOL_LATE_PUT_SECONDS": "0"}).late_put_seconds == 0
    for bad in ("-1", "soon", "nan", str(8 * 86400)):
        with pytest.raises(SettingsError, match="TOOLTOOL_LATE_PUT_SECONDS"):
            StoreSettings.from_environ({"TOOLTOOL_LATE_PUT_SECONDS": bad})
