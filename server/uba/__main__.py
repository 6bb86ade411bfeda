import sys

from uba.cli import main

sys.exit(main())
