"""Store settings: the local store's regions (TOOLTOOL_LOCAL_REGIONS)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
