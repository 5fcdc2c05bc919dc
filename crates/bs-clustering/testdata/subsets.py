# Writes the ship-group, price and stargate subsets that the bs-clustering tests need.
import gzip, json, csv, glob
D='/work/shared/data'
OUT='/work/main/crates/bs-clustering/testdata'
files=glob.glob(OUT+'/*.jsonl.gz')+glob.glob('/work/main/data/killmails/fight-*.jsonl.gz')
ships=set(); priced=set(); systems=set()
def items(lst):
    for it in lst:
        priced.add(it['item_type_id'])
        items(it.get('items',[]))
for f in files:
    for line in gzip.open(f,'rt'):
        k=json.loads(line)
        systems.add(k['solar_system_id'])
        ships.add(k['victim']['ship_type_id']); priced.add(k['victim']['ship_type_id'])
        items(k['victim'].get('items',[]))
        for a in k['attackers']:
            if 'ship_type_id' in a: ships.add(a['ship_type_id'])
cat={int(r['groupID']):int(r['categoryID']) for r in csv.DictReader(open(D+'/sde/invGroups.csv'))}
with open(OUT+'/types.csv','w') as f:
    f.write('type_id,group_id,category_id\n')
    for r in csv.DictReader(gzip.open(D+'/sde/invTypes.csv.gz','rt')):
        t=int(r['typeID'])
        if t in ships:
            g=int(r['groupID']); f.write(f'{t},{g},{cat.get(g,0)}\n')
prices=json.load(gzip.open(D+'/esi/markets-prices-2025-05-13.json.gz','rt'))
n=0
with gzip.open(OUT+'/prices.csv.gz','wt',compresslevel=9) as f:
    f.write('type_id,price\n')
    for p in sorted(prices,key=lambda p:p['type_id']):
        if p['type_id'] in priced:
            v=p.get('average_price') or p.get('adjusted_price')
            if v: f.write(f"{p['type_id']},{v}\n"); n+=1
with open(OUT+'/jumps.csv','w') as f:
    f.write('from,to\n')
    for r in csv.DictReader(open(D+'/sde/mapSolarSystemJumps.csv')):
        a=int(r['fromSolarSystemID']); b=int(r['toSolarSystemID'])
        if a in systems and b in systems: f.write(f'{a},{b}\n')
print(len(ships),'ships',n,'prices',len(systems),'systems')
# systems.csv (system_id,region_id,security) was written the same way from sde/mapSolarSystems.csv.gz
# for every system in the fixtures.
