"""process_start.mp_spawn.py - multiprocessing with the "spawn" start method
(a fresh interpreter per process: the default on macOS and Windows, and the
safe choice in a program with threads); see process_start_mp.py.
Usage: python3 process_start.mp_spawn.py [N]"""
import process_start_mp

if __name__ == "__main__":
    process_start_mp.main("spawn")
