"""Everything lives in setup.cfg, except the one file below, which setuptools cannot place by configuration."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "worker_service_gunicorn_guard.pth"  # see worker_service_gunicorn_guard.py


class BuildPyWithPth(build_py):
    """Put the .pth file at the top of the wheel, so that it lands in site-packages."""

    def run(self) -> None:
        super().run()
        self.copy_file(str(Path(__file__).parent / PTH), str(Path(self.build_lib) / PTH), preserve_mode=False)


setup(cmdclass={"build_py": BuildPyWithPth})
