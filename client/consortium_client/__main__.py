"""`python -m consortium_client`: the `consortium` command."""

import sys

from consortium_client.cli import main

sys.exit(main())
