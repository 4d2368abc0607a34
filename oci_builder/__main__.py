"""`python -m oci_builder`: the same command as `oci-tar-builder`."""

import sys

from .cli import main

sys.exit(main())
