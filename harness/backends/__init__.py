"""How nodes exist and how faults are applied to them: local processes, Docker containers, SSH hosts."""
