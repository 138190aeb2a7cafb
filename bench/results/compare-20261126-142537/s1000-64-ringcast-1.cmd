taskset -c 1 build/bench/flood/flood --proto line --port 38769 --server-pid 18130 --subs 1000 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
