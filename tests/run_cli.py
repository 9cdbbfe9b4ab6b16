"""`rlhf-keras` with the test pause points installed (see pause_hooks.py); tests run this."""

import sys

import pause_hooks

from rlhf_keras.cli import main

if __name__ == "__main__":
    pause_hooks.install()
    sys.exit(main())
