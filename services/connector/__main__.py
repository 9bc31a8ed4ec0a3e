import sys

from services.connector.service import main

sys.exit(main())
