"""Learning agents for instruct-env: SFT warm start, policy-gradient and actor-critic RL.

Sub-packages: ``agents.common`` (models, devices, generation, evaluation), one folder per
algorithm family. Nothing here is imported by :mod:`instruct_env`.
"""

__all__: list[str] = []
