"""`python -m tether.capture.datahash`: the detached process of `hash_data_background`."""

import sys

from .background import main

sys.exit(main())
