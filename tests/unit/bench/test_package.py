"""The benchmarks are an installed package: their topologies ship as its data."""

import tomllib
from pathlib import Path

from routeflow_bench import common

ROOT = Path(__file__).resolve().parents[3]


def test_the_topologies_are_package_data_so_an_installed_bench_has_them():
    package = Path(common.__file__).parent
    assert common.TOPOLOGIES.parent == package and common.TOPOLOGIES.resolve() == ROOT / "bench" / "topologies"
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = [p for p in common.TOPOLOGIES.rglob("*") if p.is_file()]
    assert shipped and all(any(p.relative_to(package).match(pattern) for pattern in patterns["routeflow_bench"])
                           for p in shipped)


def test_a_run_from_the_source_tree_writes_under_bench():
    assert common.WORK_DIR == ROOT / "bench"
