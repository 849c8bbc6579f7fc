#!/usr/bin/env bash
cd /work/wt-stall/target/ab
for round in 1 2 3; do
  for conn in 1000 10; do
    for bin in old new; do
      ./run-one.sh ./spate-$bin $conn 10 fresh-$bin-c$conn-r$round 0
    done
  done
done
echo ALLDONE
