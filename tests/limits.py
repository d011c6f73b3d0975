"""How long a test waits for a subprocess before calling it hung: long enough for a 2-core machine loaded several
times over (a launch that takes 30 s on a quiet one), since no test may fail because the machine is busy; a hang is
still caught, rather than stalling CI."""
HANG_S = 1200
