"""medkt's shipped YAML configs: this folder is installed as the package ``medkt.configs``.

Sub-folders (one per kind): ``concepts/``, ``experiments/``, ``segment/``, ``transfer/``.
Read them through :func:`medkt.paths.config_file` and :func:`medkt.paths.list_configs`.
"""
