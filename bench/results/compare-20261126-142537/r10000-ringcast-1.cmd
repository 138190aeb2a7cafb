taskset -c 1 build/bench/flood/flood --proto line --port 33247 --server-pid 19795 --subs 100 --pubs 1 --size 64 --rate 10000 --verify 10 --read-interval 5000 --duration 5 --warmup 1
