"""Where a build's torch comes from (``torch.source``): one module per route."""
