"""``leap-tracker``: the operator's command, run on the partner's machine against the deployed stack
(real AWS, or moto in the tests). It is a console script of this project's package and never ships
in the Lambda layer (it lives outside ``layers/common``).

One module per subcommand (``hash``, ``subscribe`` and ``tail``, the last two sharing
``subscription``; status, replay and redrive come later), each with
``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args, context) -> Result``; ``discovery``
finds the stack's resources the same way for all of them; ``main`` wires the subcommands.
"""
