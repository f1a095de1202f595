from __future__ import annotations

import subprocess
import sys

import pytest

import hubkit
import hubkit.data
import hubkit.eval
import hubkit.release
import hubkit.train


@pytest.mark.parametrize("package", [hubkit, hubkit.data, hubkit.train, hubkit.eval, hubkit.release])
def test_each_export_is_its_modules_object_and_other_names_are_refused(package):
    import importlib

    for name, module in package._EXPORTS.items():
        assert getattr(package, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match=rf"module '{package.__name__}' has no attribute 'nope'"):
        package.nope  # noqa: B018


def test_importing_the_packages_loads_no_torch():
    code = "import hubkit, hubkit.data, hubkit.train, hubkit.eval, hubkit.release, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
