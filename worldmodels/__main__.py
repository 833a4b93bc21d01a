import sys

from wm_app.cli import main

sys.exit(main())
