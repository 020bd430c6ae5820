"""An unmodified Hydra app (nothing of tether in it): the tether callback records its jobs."""

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

import tether


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    model = instantiate(cfg.model)  # `_target_` works on the config as Hydra composed it
    history = tether.History()
    loss = 0.0
    for step in range(cfg.epochs):
        loss = model["scale"] * cfg.lr / (step + 1)
        history.update({"loss": loss}, step=step)
    return loss


if __name__ == "__main__":
    main()
