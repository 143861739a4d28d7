"""calmplace: guided-imagery scripts rendered to mastered audio, PDF scripts and captions."""

__version__ = "0.1.0"

SR = 44_100  # 44.1 kHz: the contract's MP3 rate, used for every array inside the library
