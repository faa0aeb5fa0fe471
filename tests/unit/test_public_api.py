"""The public surface of the package is exactly what __all__ says."""
import lens
import lens._core


def test_all_is_exact():
    import pkgutil

    # submodules and subpackages become attributes once imported: they are not public names
    submodules = {m.name for m in pkgutil.iter_modules(lens.__path__)}
    public = {n for n in dir(lens) if not n.startswith("_")} - submodules
    assert public | {"__version__"} == set(lens.__all__)
    for name in lens.__all__:
        assert getattr(lens, name) is not None


def test_core_all_is_exact_and_typed():
    core = {n for n in dir(lens._core) if not n.startswith("_")} - {
        "clock", "ring", "recorder", "hist", "stream"}
    assert core == set(lens._core.__all__)
    stub = (__import__("pathlib").Path(lens._core.__file__).parent / "__init__.pyi").read_text()
    for name in lens._core.__all__:
        assert name in stub, f"{name} missing from __init__.pyi"


def test_version_is_a_version():
    parts = lens.__version__.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)
