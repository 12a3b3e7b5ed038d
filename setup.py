"""Only here for the native parts: the cffi module (cffi_modules) and the static restore stub
program beside it (native/stub.c). Everything else lives in pyproject.toml."""
import os
import subprocess

from setuptools import setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """build_ext that also builds native/ckpt-stub next to the cffi module."""

    def run(self) -> None:
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        out = os.path.join(os.path.dirname(self.get_ext_fullpath("native._sys")), "ckpt-stub")
        cc = ["gcc", "-O2", "-Wall", "-Werror", "-I", os.path.join(here, "native"), "-o", out,
              os.path.join(here, "native", "stub.c")]
        # Static: no loader and few areas, so forks of it and emptying it at restore are cheap;
        # without a static libc, a dynamic one is still far smaller than the interpreter.
        if subprocess.run(cc + ["-static"]).returncode != 0:
            subprocess.run(cc, check=True)


setup(cffi_modules=["native/ffi_build.py:ffibuilder"], cmdclass={"build_ext": BuildExt})
