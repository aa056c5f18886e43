import sys

from chatmill.cli import main

sys.exit(main())
