import sys

from mavera_cli.entry import main

sys.exit(main())
