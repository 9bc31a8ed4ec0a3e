import sys

from services.notifier.service import main

sys.exit(main())
