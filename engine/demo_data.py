"""Static tables for the demo district (see engine.demo): areas, units, streets, names.

The unit codes are the ones workflows/dmn/dispatch_rules.dmn routes to; a test checks
that every unit the table names exists after seeding.
"""
from __future__ import annotations

__all__ = ["AREAS", "AREA_PREFIX", "CONTRACTS", "DEPOTS", "DESCRIPTIONS", "DMN_UNITS", "GIVEN", "LONG_SLA",
           "NOT_OURS_REASONS", "REJECT_REASONS", "SLA_HOURS", "STREETS", "SURNAMES", "UNITS"]

# Street offices (the `area` of a work order and a street): code -> (English, Chinese).
AREAS = {
    "huaqiao": ("Huaqiao Street Office", "花桥街道办事处"),
    "xinhe": ("Xinhe Street Office", "新河街道办事处"),
    "dongcheng": ("Dongcheng Street Office", "东城街道办事处"),
}

# Responsible units: code -> (English name, Chinese name, kind, workers).
UNITS = {
    "clean-east": ("Eastern Cleaning Contractor", "东片环卫保洁公司", "cleaning", 3),
    "clean-west": ("Western Cleaning Contractor", "西片环卫保洁公司", "cleaning", 3),
    "market-huaqiao": ("Huaqiao Market Patrol", "花桥街道市容巡查队", "market", 2),
    "market-xinhe": ("Xinhe Market Patrol", "新河街道市容巡查队", "market", 2),
    "market-dongcheng": ("Dongcheng Market Patrol", "东城街道市容巡查队", "market", 2),
    "ads-team": ("Illegal Advertising Removal Team", "违法广告清理队", "ads", 2),
    "roads": ("Roads Maintenance Department", "道路养护所", "roads", 3),
    "gas-office": ("Bottled Gas Safety Office", "瓶装燃气安全办公室", "gas", 2),
    "green-team": ("Landscaping Team", "绿化养护队", "landscaping", 2),
    "dispatch-desk": ("District Dispatch Desk", "区城运调度台", "dispatch", 1),
    # The street offices themselves, so a dispatcher can re-route to them.
    "huaqiao": (AREAS["huaqiao"][0], AREAS["huaqiao"][1], "street_office", 1),
    "xinhe": (AREAS["xinhe"][0], AREAS["xinhe"][1], "street_office", 1),
    "dongcheng": (AREAS["dongcheng"][0], AREAS["dongcheng"][1], "street_office", 1),
}

# Units named by dispatch_rules.dmn (checked by tests/test_cli_demo.py against the file).
DMN_UNITS = ("clean-east", "clean-west", "market-huaqiao", "market-xinhe", "market-dongcheng",
             "ads-team", "roads", "gas-office", "green-team", "dispatch-desk")

# Streets: code -> (English, Chinese, area, (lat, lon) of its west end).
STREETS = {
    "hq-huaqiao-rd": ("Huaqiao Road", "花桥路", "huaqiao", (31.2312, 121.3921)),
    "hq-lianhua-st": ("Lianhua Street", "莲花街", "huaqiao", (31.2346, 121.3968)),
    "hq-qiaoxi-ln": ("Qiaoxi Lane", "桥西弄", "huaqiao", (31.2281, 121.3897)),
    "hq-yuanyang-rd": ("Yuanyang Road", "鸳鸯路", "huaqiao", (31.2365, 121.3889)),
    "xh-xinhe-rd": ("Xinhe Road", "新河路", "xinhe", (31.2104, 121.4032)),
    "xh-hebin-st": ("Hebin Street", "河滨街", "xinhe", (31.2077, 121.4085)),
    "xh-liulin-rd": ("Liulin Road", "柳林路", "xinhe", (31.2135, 121.4110)),
    "xh-guangming-ln": ("Guangming Lane", "光明弄", "xinhe", (31.2052, 121.3999)),
    "dc-dongcheng-ave": ("Dongcheng Avenue", "东城大道", "dongcheng", (31.1963, 121.4187)),
    "dc-chaoyang-rd": ("Chaoyang Road", "朝阳路", "dongcheng", (31.1931, 121.4232)),
    "dc-fuxing-st": ("Fuxing Street", "复兴街", "dongcheng", (31.1998, 121.4251)),
    "dc-heping-ln": ("Heping Lane", "和平弄", "dongcheng", (31.1907, 121.4160)),
}

AREA_PREFIX = {"huaqiao": "HQ", "xinhe": "XH", "dongcheng": "DC"}

# Cleaning contracts: code -> (contractor, unit, [(crew code, muster point, shift start "HH:MM")]).
CONTRACTS = {
    "ct-east-2026": ("Shanghai Jiejing Environmental Services Co. / 上海洁净环境服务有限公司", "clean-east",
                     [("east-a", "Dongcheng Avenue depot / 东城大道作业点", "06:00"),
                      ("east-b", "Chaoyang Road depot / 朝阳路作业点", "14:00")]),
    "ct-west-2026": ("Huamei Sanitation Co. / 华美环卫有限公司", "clean-west",
                     [("west-a", "Huaqiao Road depot / 花桥路作业点", "05:30"),
                      ("west-b", "Xinhe Road depot / 新河路作业点", "13:30")]),
    "ct-west-night": ("Yexing Cleaning Co. / 夜行保洁有限公司", "clean-west",
                      [("night-a", "Liulin Road depot / 柳林路作业点", "06:30"),
                       ("night-b", "Lianhua Street depot / 莲花街作业点", "21:00")]),
}

# Where each crew musters (its depot, near the street it is named after) and where the depot's
# fixed badge gateway hangs, a few metres away: crew code -> ((lat, lon) depot, (lat, lon) gateway).
DEPOTS = {
    "east-a": ((31.1958, 121.4195), (31.19585, 121.41975)),
    "east-b": ((31.1926, 121.4240), (31.19265, 121.42425)),
    "west-a": ((31.2307, 121.3929), (31.23075, 121.39315)),
    "west-b": ((31.2099, 121.4040), (31.20995, 121.40425)),
    "night-a": ((31.2130, 121.4118), (31.21305, 121.41205)),
    "night-b": ((31.2341, 121.3976), (31.23415, 121.39785)),
}

# SLA hours per category as dispatch_rules.dmn sets them (used to plan realistic histories).
SLA_HOURS = {"exposed_garbage": 24, "street_vending": 24, "illegal_ads": 48, "road_damage": 4,
             "manhole_cover": 4, "gas_hazard": 24, "tree_fallen": 6, "other": 72}
LONG_SLA = ("exposed_garbage", "street_vending", "illegal_ads", "other")

SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
            "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
GIVEN = ("伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛",
         "明", "超", "秀兰", "霞", "平", "刚", "桂英", "建华", "文", "华", "红", "建国", "志强", "淑珍",
         "玉兰", "海燕", "晓东", "国庆", "丹", "欣怡", "子涵", "浩然", "雨轩", "俊杰")

# Work-order problem descriptions per category: (English, Chinese).
DESCRIPTIONS = {
    "exposed_garbage": [("Overflowing bins next to the bus stop", "公交站旁垃圾桶满溢"),
                        ("Bags of construction waste dumped on the pavement", "人行道上堆放装修垃圾"),
                        ("Garbage piled at the lane entrance", "弄堂口垃圾堆积")],
    "street_vending": [("Unlicensed fruit stall blocking the crossing", "无证水果摊占用路口"),
                       ("Breakfast stalls occupying the cycle lane", "早点摊占用非机动车道")],
    "illegal_ads": [("Flyers pasted on the lamp posts", "路灯杆上张贴小广告"),
                    ("Unauthorised banner across the street", "私自悬挂横幅")],
    "road_damage": [("Pothole in the right lane, about 40 cm wide", "右侧车道坑洞约40厘米"),
                    ("Broken kerb stones at the corner", "转角处路缘石破损")],
    "manhole_cover": [("Manhole cover missing near the school gate", "学校门口窨井盖缺失"),
                      ("Rattling manhole cover in the bike lane", "非机动车道窨井盖松动")],
    "tree_fallen": [("Branch fell across the footpath after the storm", "暴雨后树枝倒伏挡住人行道")],
    "gas_hazard": [("Gas smell reported in the stairwell", "楼道内有燃气异味")],
    "other": [("Street light out for three nights", "路灯连续三晚不亮"),
              ("Abandoned shared bikes blocking the entrance", "废弃共享单车堵塞出入口")],
}

REJECT_REASONS = ["Photos do not show the whole site / 照片未反映现场全貌",
                  "Residue still visible / 仍有残留",
                  "Wrong location in the after-photos / 整改照片位置不符"]

NOT_OURS_REASONS = ["The pile is on a construction site; the builder is responsible / 位于工地内，应由施工方负责",
                    "Damage is on a private road inside the estate / 属小区内部道路，由物业负责"]
