# Extracts the compact fixtures of bs-clustering/testdata from the shared week files.
import gzip, json, csv, sys, os
from datetime import datetime, timezone
D='/work/shared/data'
OUT='/work/main/crates/bs-clustering/testdata'
names={}
for r in csv.DictReader(gzip.open(D+'/sde/mapSolarSystems.csv.gz','rt')):
    names[r['solarSystemName']]=int(r['solarSystemID'])
def ts(s): return s.replace(' ','T')+':00Z' if len(s)==16 else s
# name -> list of (system names, day file, from, to)
spec={
 'fight-massacre-j105951-2021-11-30': (['J105951'],'2021-11-30','2021-11-30T00:00:00Z','2021-11-30T23:59:59Z'),
 'grind-tama-2021-11-27': (['Tama'],'2021-11-27','2021-11-27T00:00:00Z','2021-11-27T23:59:59Z'),
 'grind-kourmonen-2021-11-27': (['Kourmonen'],'2021-11-27','2021-11-27T00:00:00Z','2021-11-27T23:59:59Z'),
 'fight-ec-p8r-2021-11-28': (['EC-P8R','G-M4I8'],'2021-11-28','2021-11-28T00:00:00Z','2021-11-28T06:30:00Z'),
 'fight-x47l-q-2021-11-30': (['X47L-Q'],'2021-11-30','2021-11-30T18:30:00Z','2021-11-30T21:00:00Z'),
 'fight-m-oee8-2021-11-29': (['M-OEE8'],'2021-11-29','2021-11-29T18:00:00Z','2021-11-29T20:30:00Z'),
 # Neighbour systems of the repo's fight fixtures (data/killmails/fight-*), for multi-system checks.
 'neighbours-jorund-o-ivnh-2021-11-28': (['Hemin','O-ZXUV','1-NW2G'],'2021-11-28','2021-11-28T09:30:00Z','2021-11-28T21:00:00Z'),
 'neighbours-lxq2-t-2021-11-27': (['PX-IHN'],'2021-11-27','2021-11-27T20:00:00Z','2021-11-27T22:30:00Z'),
}
def strip(k):
    k.pop('killmail_hash',None); k.pop('http_last_modified',None)
    k['victim'].pop('position',None)
    return k
for name,(systems,day,a,b) in spec.items():
    ids={names[s] for s in systems}
    out=[]
    for line in gzip.open(f'{D}/killmails/everef-killmails-{day}.jsonl.gz','rt'):
        k=json.loads(line)
        if k['solar_system_id'] in ids and a<=k['killmail_time']<=b:
            out.append(json.dumps(strip(k),separators=(',',':')))
    with gzip.open(f'{OUT}/{name}.jsonl.gz','wt',compresslevel=9) as f:
        f.write('\n'.join(out)+'\n')
    print(name,len(out),os.path.getsize(f'{OUT}/{name}.jsonl.gz'))
