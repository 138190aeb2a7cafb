taskset -c 1 build/bench/flood/flood --proto line --port 43747 --server-pid 20887 --subs 100 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
