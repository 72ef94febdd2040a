import sys

from cryopipe.cli import main

sys.exit(main())
