"""Fixtures of the bundle tests: the tiny data sets (written by ``bundle_test_data``)."""

from __future__ import annotations

import pytest

from bundle_test_data import MEDMNIST_CLASSES, write_busv, write_covid_blues, write_medmnist


@pytest.fixture(scope="session")
def bundle_data(tmp_path_factory) -> dict[str, str]:
    """Folders of tiny data: ``{"medmnist": ..., "covid_blues": ..., "busv": ...}``."""
    medmnist = str(tmp_path_factory.mktemp("medmnist3d"))
    for i, (flag, n) in enumerate(MEDMNIST_CLASSES.items()):
        write_medmnist(medmnist, flag, n, seed=i)
    covid = str(tmp_path_factory.mktemp("covid_blues"))
    write_covid_blues(covid, patients_per_label=5, videos_per_patient=4)  # every class of every target in every fold
    busv = str(tmp_path_factory.mktemp("busv"))
    write_busv(busv)
    return {"medmnist": medmnist, "covid_blues": covid, "busv": busv}
