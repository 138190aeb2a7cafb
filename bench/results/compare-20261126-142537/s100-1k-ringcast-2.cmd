taskset -c 1 build/bench/flood/flood --proto line --port 35683 --server-pid 20433 --subs 100 --pubs 1 --size 1024 --rate 0 --verify 2 --duration 5 --warmup 1
