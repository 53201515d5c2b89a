import sys

from tailor.cli import main

if __name__ == "__main__":  # Airflow's plugin manager imports every module under plugins/
    sys.exit(main())
