"""cargo-elt: moves a Cargo workspace's operational data into a warehouse, with dlt.

One import name for the whole distribution. The repository keeps its working layout and this package
links it in (``cargo_elt/source`` is ``sources/cargo``, ``cargo_elt/pipelines`` is ``pipelines``,
``cargo_elt/emulator`` is ``emulator``), so a checkout, an editable install and a wheel all import the
same names:

* ``cargo_elt.source``: the dlt source (``from cargo_elt.source import cargo_source``); self-contained,
  so ``dlt init cargo <destination> --location <checkout>`` can copy it into a dlt project;
* ``cargo_elt.pipelines``: the ``cargo-elt`` command and the Airflow DAGs;
* ``cargo_elt.emulator``: the local Cargo API emulator, usable with the ``emulator`` extra only.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cargo-elt")
except PackageNotFoundError:  # a checkout put on sys.path without being installed
    __version__ = "0+unknown"
