"""The package's top level: cheap to import, every public name reachable."""

import subprocess
import sys

import ncsn


def test_import_ncsn_does_not_import_torch():
    code = "import sys, ncsn; print('torch' in sys.modules, 'ncsn.api' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_every_public_name_resolves_to_its_module():
    from ncsn import _EXPORTS

    assert set(ncsn.__all__) == {*_EXPORTS, "__version__"}
    for name, module in _EXPORTS.items():
        assert getattr(ncsn, name).__module__ == module, name
    assert set(ncsn.__all__) <= set(dir(ncsn))
    try:
        ncsn.not_a_name  # noqa: B018
    except AttributeError as e:
        assert "not_a_name" in str(e)
    else:
        raise AssertionError("unknown attribute did not raise")


def test_ncsn_help_does_not_import_torch_and_a_subcommand_help_does():
    code = (
        "import sys, contextlib, io\n"
        "from ncsn.cli import main\n"
        "for argv in (['--help'], ['train', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "    print('torch' in sys.modules, '--max-steps' in out.getvalue())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # the list of subcommands needs no torch; a subcommand's options come with its module
    assert out.stdout.split() == ["False", "False", "True", "True"]
