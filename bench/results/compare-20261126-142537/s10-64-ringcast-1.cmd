taskset -c 1 build/bench/flood/flood --proto line --port 38123 --server-pid 17443 --subs 10 --pubs 1 --size 64 --rate 0 --verify 2 --duration 5 --warmup 1
