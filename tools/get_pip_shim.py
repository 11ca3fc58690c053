"""Offline stand-in for the get-pip.py bootstrap script that ansible-test downloads.

ansible-test creates every sanity-test virtual environment without pip, then runs
``get-pip.py <pip options> pip==X`` fetched from a host outside the package registries, which
this project's machines cannot reach. This script does the same job with what they have:
pip from the interpreter's own ensurepip, then ``pip install`` of the requested packages from
the package index. tools/sanity.sh puts it in ansible-test's cache under the name it looks for.
"""

import subprocess
import sys

# Options that only get-pip.py understands (pip install would reject them).
GET_PIP_ONLY_OPTIONS = {"--no-setuptools", "--no-wheel", "--no-pip"}


def main():
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"],
                          stdout=subprocess.DEVNULL)
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "--upgrade"] + args)


if __name__ == "__main__":
    main()
