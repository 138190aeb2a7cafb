taskset -c 1 build/bench/flood/flood --proto line --port 45829 --server-pid 20596 --subs 100 --pubs 1 --size 64 --rate 1000 --verify 10 --read-interval 5000 --duration 5 --warmup 1
