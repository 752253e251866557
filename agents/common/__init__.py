"""Code shared by the agents: models, devices, generation, evaluation, logging, configuration.

Import the sub-modules directly (e.g. ``from agents.common.evaluation import evaluate``); this
package imports nothing itself, so ``import agents.common`` stays cheap.
"""

__all__: list[str] = []
