# wait for the nb201 s4 fit to finish, then run chain A
while pgrep -f "gennape-eff-no-nb201-s4" > /dev/null; do sleep 20; done
bash /work/explore/s21/chain.sh "nb301:nb301:0 macro:transnas101_macro:0 nb301:nb301:2 macro:transnas101_macro:2 nb301:nb301:4 macro:transnas101_macro:4 micro:transnas101_micro:1 nb101:nb101:1 micro:transnas101_micro:3 nb101:nb101:3"
