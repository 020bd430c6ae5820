"""A decorated main with a YAML config beside it, for the bad-input tests."""

from __future__ import annotations

import tether


@tether.experiment(config="conf.yaml")
def main(cfg, run):
    print(f"learning_rate={cfg.learning_rate} lr={cfg.lr} new={cfg.get('new_key')}")


if __name__ == "__main__":
    main()
