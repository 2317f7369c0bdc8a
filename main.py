"""`python main.py` opens AutoMLP Studio; `python main.py --help` lists the options."""

from app.main import main

if __name__ == "__main__":
    raise SystemExit(main())
