"""Write a synthetic video-preference data set (see docs/synthetic_data.md).

Same as `python -m vlmrm.testing.synthetic`; kept here so the examples folder shows every entry point, e.g.

    python examples/make_synthetic_video_pairs.py --out data/synthetic --num_train 200 --num_test 100
"""

from vlmrm.testing.synthetic import main

if __name__ == "__main__":
    main()
