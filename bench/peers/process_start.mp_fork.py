"""process_start.mp_fork.py - multiprocessing with the "fork" start method
(Linux's default before Python 3.14); see process_start_mp.py.
Usage: python3 process_start.mp_fork.py [N]"""
import process_start_mp

if __name__ == "__main__":
    process_start_mp.main("fork")
