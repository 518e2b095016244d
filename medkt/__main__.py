import sys

from medkt.cli.main import main

sys.exit(main())
