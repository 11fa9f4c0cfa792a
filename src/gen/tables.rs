//! Invented but plausible values for synthetic ECLRS rows. Nothing here is, or is drawn from, a real person.
//!
//! Counties are New York's FIPS county codes (written as integers, as ECLRS does) weighted roughly by population,
//! with New York City's five boroughs scaled to about 40 % of rows. Labs carry their own accession number formats.

pub(crate) struct Place {
    pub city: &'static str,
    pub zip_lo: u32,
    pub zip_hi: u32,
}

pub(crate) struct County {
    pub fips: u16,
    /// Relative frequency of patients living in this county.
    pub weight: u32,
    pub places: &'static [Place],
    pub area_codes: &'static [&'static str],
}

const fn p(city: &'static str, zip_lo: u32, zip_hi: u32) -> Place {
    Place {
        city,
        zip_lo,
        zip_hi,
    }
}

const fn c(
    fips: u16,
    weight: u32,
    places: &'static [Place],
    area_codes: &'static [&'static str],
) -> County {
    County {
        fips,
        weight,
        places,
        area_codes,
    }
}

const NYC_MANHATTAN: &[&str] = &["212", "646", "917", "332"];
const NYC_OUTER: &[&str] = &["718", "347", "929", "917"];

/// The boroughs of New York City.
#[cfg(test)]
pub(crate) const NYC_FIPS: [u16; 5] = [5, 47, 61, 81, 85];

pub(crate) static COUNTIES: &[County] = &[
    c(5, 1250, &[p("BRONX", 10451, 10475)], NYC_OUTER),
    c(47, 2330, &[p("BROOKLYN", 11201, 11239)], NYC_OUTER),
    c(61, 1440, &[p("NEW YORK", 10001, 10040)], NYC_MANHATTAN),
    c(
        81,
        2045,
        &[
            p("JAMAICA", 11430, 11436),
            p("FLUSHING", 11354, 11358),
            p("ASTORIA", 11101, 11106),
            p("ELMHURST", 11373, 11373),
        ],
        NYC_OUTER,
    ),
    c(85, 420, &[p("STATEN ISLAND", 10301, 10314)], NYC_OUTER),
    c(
        1,
        314,
        &[p("ALBANY", 12203, 12210), p("COHOES", 12047, 12047)],
        &["518"],
    ),
    c(3, 47, &[p("WELLSVILLE", 14895, 14895)], &["585"]),
    c(
        7,
        198,
        &[
            p("BINGHAMTON", 13901, 13905),
            p("JOHNSON CITY", 13790, 13790),
        ],
        &["607"],
    ),
    c(9, 77, &[p("OLEAN", 14760, 14760)], &["716"]),
    c(11, 76, &[p("AUBURN", 13021, 13021)], &["315"]),
    c(
        13,
        127,
        &[p("JAMESTOWN", 14701, 14701), p("DUNKIRK", 14048, 14048)],
        &["716"],
    ),
    c(15, 84, &[p("ELMIRA", 14901, 14905)], &["607"]),
    c(17, 47, &[p("NORWICH", 13815, 13815)], &["607"]),
    c(19, 80, &[p("PLATTSBURGH", 12901, 12901)], &["518"]),
    c(21, 61, &[p("HUDSON", 12534, 12534)], &["518"]),
    c(23, 46, &[p("CORTLAND", 13045, 13045)], &["607"]),
    c(25, 44, &[p("DELHI", 13753, 13753)], &["607"]),
    c(
        27,
        295,
        &[p("POUGHKEEPSIE", 12601, 12603), p("BEACON", 12508, 12508)],
        &["845"],
    ),
    c(
        29,
        954,
        &[
            p("BUFFALO", 14201, 14227),
            p("CHEEKTOWAGA", 14225, 14225),
            p("TONAWANDA", 14150, 14150),
        ],
        &["716"],
    ),
    c(31, 37, &[p("ELIZABETHTOWN", 12932, 12932)], &["518"]),
    c(33, 47, &[p("MALONE", 12953, 12953)], &["518"]),
    c(35, 53, &[p("GLOVERSVILLE", 12078, 12078)], &["518"]),
    c(37, 58, &[p("BATAVIA", 14020, 14020)], &["585"]),
    c(39, 48, &[p("CATSKILL", 12414, 12414)], &["518"]),
    c(41, 5, &[p("LAKE PLEASANT", 12108, 12108)], &["518"]),
    c(43, 60, &[p("HERKIMER", 13350, 13350)], &["315"]),
    c(45, 116, &[p("WATERTOWN", 13601, 13601)], &["315"]),
    c(49, 27, &[p("LOWVILLE", 13367, 13367)], &["315"]),
    c(51, 62, &[p("GENESEO", 14454, 14454)], &["585"]),
    c(53, 68, &[p("ONEIDA", 13421, 13421)], &["315"]),
    c(
        55,
        759,
        &[
            p("ROCHESTER", 14604, 14626),
            p("IRONDEQUOIT", 14617, 14617),
            p("GREECE", 14612, 14612),
        ],
        &["585"],
    ),
    c(57, 50, &[p("AMSTERDAM", 12010, 12010)], &["518"]),
    c(
        59,
        1395,
        &[
            p("HEMPSTEAD", 11550, 11551),
            p("LEVITTOWN", 11756, 11756),
            p("FREEPORT", 11520, 11520),
            p("GARDEN CITY", 11530, 11530),
        ],
        &["516"],
    ),
    c(
        63,
        212,
        &[
            p("NIAGARA FALLS", 14301, 14305),
            p("LOCKPORT", 14094, 14094),
        ],
        &["716"],
    ),
    c(
        65,
        232,
        &[p("UTICA", 13501, 13502), p("ROME", 13440, 13440)],
        &["315"],
    ),
    c(67, 476, &[p("SYRACUSE", 13202, 13224)], &["315"]),
    c(
        69,
        112,
        &[p("CANANDAIGUA", 14424, 14424), p("GENEVA", 14456, 14456)],
        &["585"],
    ),
    c(
        71,
        401,
        &[p("NEWBURGH", 12550, 12550), p("MIDDLETOWN", 10940, 10940)],
        &["845"],
    ),
    c(73, 40, &[p("ALBION", 14411, 14411)], &["585"]),
    c(
        75,
        118,
        &[p("OSWEGO", 13126, 13126), p("FULTON", 13069, 13069)],
        &["315"],
    ),
    c(77, 58, &[p("ONEONTA", 13820, 13820)], &["607"]),
    c(
        79,
        97,
        &[p("CARMEL", 10512, 10512), p("BREWSTER", 10509, 10509)],
        &["845"],
    ),
    c(83, 161, &[p("TROY", 12180, 12182)], &["518"]),
    c(
        87,
        338,
        &[
            p("NEW CITY", 10956, 10956),
            p("SPRING VALLEY", 10977, 10977),
        ],
        &["845"],
    ),
    c(
        89,
        108,
        &[p("CANTON", 13617, 13617), p("POTSDAM", 13676, 13676)],
        &["315"],
    ),
    c(
        91,
        235,
        &[
            p("SARATOGA SPRINGS", 12866, 12866),
            p("CLIFTON PARK", 12065, 12065),
        ],
        &["518"],
    ),
    c(93, 158, &[p("SCHENECTADY", 12303, 12309)], &["518"]),
    c(95, 30, &[p("COBLESKILL", 12043, 12043)], &["518"]),
    c(97, 18, &[p("WATKINS GLEN", 14891, 14891)], &["607"]),
    c(99, 33, &[p("SENECA FALLS", 13148, 13148)], &["315"]),
    c(
        101,
        93,
        &[p("CORNING", 14830, 14830), p("HORNELL", 14843, 14843)],
        &["607"],
    ),
    c(
        103,
        1525,
        &[
            p("BRENTWOOD", 11717, 11717),
            p("HUNTINGTON", 11743, 11743),
            p("PATCHOGUE", 11772, 11772),
            p("STONY BROOK", 11790, 11790),
        ],
        &["631"],
    ),
    c(105, 78, &[p("MONTICELLO", 12701, 12701)], &["845"]),
    c(107, 48, &[p("OWEGO", 13827, 13827)], &["607"]),
    c(109, 105, &[p("ITHACA", 14850, 14850)], &["607"]),
    c(111, 181, &[p("KINGSTON", 12401, 12401)], &["845"]),
    c(113, 65, &[p("GLENS FALLS", 12801, 12801)], &["518"]),
    c(115, 61, &[p("HUDSON FALLS", 12839, 12839)], &["518"]),
    c(117, 91, &[p("NEWARK", 14513, 14513)], &["315"]),
    c(
        119,
        1004,
        &[
            p("YONKERS", 10701, 10710),
            p("WHITE PLAINS", 10601, 10607),
            p("NEW ROCHELLE", 10801, 10805),
            p("MOUNT VERNON", 10550, 10553),
        ],
        &["914"],
    ),
    c(121, 40, &[p("WARSAW", 14569, 14569)], &["585"]),
    c(123, 25, &[p("PENN YAN", 14527, 14527)], &["315"]),
];

pub(crate) static LAST_NAMES: &[&str] = &[
    "SMITH",
    "JOHNSON",
    "WILLIAMS",
    "BROWN",
    "JONES",
    "GARCIA",
    "MILLER",
    "DAVIS",
    "RODRIGUEZ",
    "MARTINEZ",
    "HERNANDEZ",
    "LOPEZ",
    "GONZALEZ",
    "WILSON",
    "ANDERSON",
    "THOMAS",
    "TAYLOR",
    "MOORE",
    "JACKSON",
    "MARTIN",
    "LEE",
    "PEREZ",
    "THOMPSON",
    "WHITE",
    "HARRIS",
    "SANCHEZ",
    "CLARK",
    "RAMIREZ",
    "LEWIS",
    "ROBINSON",
    "WALKER",
    "YOUNG",
    "ALLEN",
    "KING",
    "WRIGHT",
    "SCOTT",
    "TORRES",
    "NGUYEN",
    "HILL",
    "FLORES",
    "GREEN",
    "ADAMS",
    "NELSON",
    "BAKER",
    "HALL",
    "RIVERA",
    "CAMPBELL",
    "MITCHELL",
    "CARTER",
    "ROBERTS",
    "COHEN",
    "GOLDBERG",
    "FRIEDMAN",
    "SCHWARTZ",
    "KAPLAN",
    "PATEL",
    "SHAH",
    "KHAN",
    "ALI",
    "CHEN",
    "WANG",
    "LI",
    "ZHANG",
    "LIU",
    "HUANG",
    "KIM",
    "PARK",
    "O'BRIEN",
    "O'CONNOR",
    "MURPHY",
    "SULLIVAN",
    "KELLY",
    "FITZGERALD",
    "ROSSI",
    "RUSSO",
    "ESPOSITO",
    "ROMANO",
    "IVANOV",
    "PETROV",
    "KOWALSKI",
    "NOWAK",
    "OKAFOR",
    "MENSAH",
    "DIALLO",
    "JEAN-PIERRE",
    "ST. LOUIS",
    "DE LA CRUZ",
    "VAN BUREN",
    "MC DONALD",
    "BERNSTEIN",
    "OKONKWO",
    "LEVY",
];

pub(crate) static FIRST_NAMES: &[&str] = &[
    "JAMES",
    "MARY",
    "ROBERT",
    "PATRICIA",
    "JOHN",
    "JENNIFER",
    "MICHAEL",
    "LINDA",
    "DAVID",
    "ELIZABETH",
    "WILLIAM",
    "BARBARA",
    "RICHARD",
    "SUSAN",
    "JOSEPH",
    "JESSICA",
    "THOMAS",
    "SARAH",
    "CHRISTOPHER",
    "KAREN",
    "CHARLES",
    "LISA",
    "DANIEL",
    "NANCY",
    "MATTHEW",
    "BETTY",
    "ANTHONY",
    "SANDRA",
    "MARK",
    "MARGARET",
    "JOSE",
    "MARIA",
    "LUIS",
    "CARMEN",
    "JUAN",
    "ANA",
    "CARLOS",
    "ROSA",
    "WEI",
    "MEI",
    "YAN",
    "JUN",
    "MOSHE",
    "YITZCHOK",
    "CHAYA",
    "RIVKA",
    "SHMUEL",
    "ESTHER",
    "AHMED",
    "FATIMA",
    "MOHAMMED",
    "AISHA",
    "PRIYA",
    "RAJESH",
    "ANIL",
    "SUNITA",
    "KWAME",
    "AMARA",
    "CHIDI",
    "NGOZI",
    "YUKI",
    "HIROSHI",
    "SOO-JIN",
    "MIN-JUN",
    "OLGA",
    "DMITRI",
    "SVETLANA",
    "BABY GIRL",
    "BABY BOY",
    "MARY ANN",
    "JEAN-CLAUDE",
    "KENNETH",
    "DEBORAH",
];

/// Nicknames written in quotes after a first name (`ROBERT "BOB"`), so some fields need doubled inner quotes.
pub(crate) static NICKNAMES: &[(&str, &str)] = &[
    ("ROBERT", "BOB"),
    ("WILLIAM", "BILL"),
    ("ELIZABETH", "LIZ"),
    ("MARGARET", "PEGGY"),
    ("JOSEPH", "JOE"),
    ("KATHERINE", "KATE"),
];

pub(crate) static PROVIDER_FIRST_NAMES: &[&str] = &[
    "THOMAS",
    "SAMUEL",
    "RAJESH",
    "ANNA",
    "SUSAN",
    "MARIA",
    "DAVID",
    "JENNIFER",
    "KWAME",
    "ELENA, NP",
    "LI",
    "JOHN, PA",
    "ROBERT",
    "MEI",
    "OLUWASEUN",
    "MICHAEL",
];

pub(crate) static PROVIDER_LAST_NAMES: &[&str] = &[
    "NGUYEN",
    "GOLDSTEIN",
    "BERNSTEIN",
    "OKONKWO",
    "FITZGERALD",
    "PATEL",
    "KHAN",
    "LEVY",
    "SCHMIDT",
    "ROSEN",
    "CHANG",
    "MORALES",
    "ADEYEMI",
    "KOWALCZYK",
];

pub(crate) static STREETS: &[&str] = &[
    "MAIN",
    "BROADWAY",
    "PARK",
    "OCEAN",
    "ATLANTIC",
    "FLATBUSH",
    "NOSTRAND",
    "GRAND",
    "CLINTON",
    "MADISON",
    "LEXINGTON",
    "AMSTERDAM",
    "COLUMBUS",
    "RIVERSIDE",
    "FORDHAM",
    "CONCOURSE",
    "JAMAICA",
    "NORTHERN",
    "QUEENS",
    "RICHMOND",
    "HYLAN",
    "VICTORY",
    "STATE",
    "LAKE",
    "HILL",
    "ELM",
    "MAPLE",
    "OAK",
    "PINE",
    "CEDAR",
    "WASHINGTON",
    "JEFFERSON",
    "DELAWARE",
    "GENESEE",
    "SALINA",
    "ERIE",
    "CENTRAL",
    "WESTCHESTER",
    "JAMES",
    "PLEASANT",
    "CHURCH",
    "MILL",
    "HIGHLAND",
    "RIDGE",
    "UNION",
    "5TH",
    "3RD",
    "E 86TH",
    "W 125TH",
    "E 14TH",
];

pub(crate) static STREET_TYPES: &[&str] = &[
    "ST", "AVE", "RD", "BLVD", "DR", "PL", "CT", "LN", "PKWY", "TPKE", "TER", "WAY",
];

pub(crate) static UNIT_PREFIXES: &[&str] = &["APT", "FL", "UNIT", "#", "APT"];

/// Which accession number format a lab uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AccessionFormat {
    /// `1` + 8 digits (`101600017`).
    Quest,
    /// `2` + 10 digits.
    LabCorp,
    /// `B` + 9 digits (`B001600000`).
    BioReference,
    /// `NW` + 9 digits.
    Northwell,
    /// `PHL-YY-` + 7 digits.
    NycPhl,
    /// `IDRYY` + 8 digits + `-01`.
    Acme,
    /// `CUE-` + 8 digits.
    Cue,
    /// `WCYY-` + 7 digits.
    Wadsworth,
    /// `SJ` + 8 digits.
    SmithJones,
    /// `MK/YY/` + 7 digits.
    Mike,
    /// `MSH` + 9 digits.
    Sinai,
}

/// A sending lab: `MSHLABPFI`, `MSHSENDINGFACILITYCLIA`, `MSHSENDINGFACILITYNAME`, possible producer lab names.
pub(crate) struct Lab {
    pub pfi: &'static str,
    pub clia: &'static str,
    pub name: &'static str,
    pub producers: &'static [&'static str],
    pub accession: AccessionFormat,
    pub weight: u32,
}

const fn lab(
    pfi: &'static str,
    clia: &'static str,
    name: &'static str,
    producers: &'static [&'static str],
    accession: AccessionFormat,
    weight: u32,
) -> Lab {
    Lab {
        pfi,
        clia,
        name,
        producers,
        accession,
        weight,
    }
}

pub(crate) static LABS: &[Lab] = &[
    lab(
        "8741",
        "33D2098720",
        "QUEST DIAGNOSTICS INCORPORATED",
        &["QUEST DIAGNOSTICS-TETERBORO", ""],
        AccessionFormat::Quest,
        25,
    ),
    lab(
        "6802",
        "33D2155473",
        "BIOREFERENCE LABORATORIES",
        &["BIOREFERENCE LABS", ""],
        AccessionFormat::BioReference,
        20,
    ),
    lab(
        "5361",
        "05D0642827",
        "LABORATORY CORPORATION OF AMERICA HOLDINGS",
        &["LABCORP RARITAN", ""],
        AccessionFormat::LabCorp,
        12,
    ),
    lab(
        "7520",
        "31D2169935",
        "NORTHWELL HEALTH LABORATORIES",
        &["Northwell Health Labs", ""],
        AccessionFormat::Northwell,
        12,
    ),
    lab(
        "1463",
        "33D0154376",
        "NYC PUBLIC HEALTH LABORATORY",
        &["NYC PHL"],
        AccessionFormat::NycPhl,
        6,
    ),
    lab(
        "3130",
        "31D0652945",
        "ACME LABORATORIES | INC",
        &["ACME LABORATORIES", ""],
        AccessionFormat::Acme,
        8,
    ),
    lab(
        "9115",
        "33D2187203",
        "SHERLOCK BIOSCIENCES | CUE HEALTH",
        &[""],
        AccessionFormat::Cue,
        4,
    ),
    lab(
        "0411",
        "33D0653112",
        "NYS DOH WADSWORTH CENTER",
        &["WADSWORTH CENTER"],
        AccessionFormat::Wadsworth,
        5,
    ),
    lab(
        "2207",
        "33D1027761",
        "SMITH | JONES LAB",
        &["SMITH & JONES CLINICAL LAB", ""],
        AccessionFormat::SmithJones,
        4,
    ),
    lab(
        "4471",
        "33D2203398",
        "DR. \"MIKE\" DIAGNOSTICS P.C.",
        &[""],
        AccessionFormat::Mike,
        2,
    ),
    lab(
        "3381",
        "33D0660052",
        "MOUNT SINAI HOSPITAL LABORATORY",
        &["MSH CORE LAB"],
        AccessionFormat::Sinai,
        6,
    ),
];

/// Ordering facilities: name and city.
pub(crate) static FACILITIES: &[(&str, &str)] = &[
    ("STONY BROOK UNIVERSITY HOSPITAL", "STONY BROOK"),
    ("ACME MEDICAL CENTER", "NEW ROCHELLE"),
    ("ELMHURST HOSPITAL CENTER", "ELMHURST"),
    ("ST. PETER'S HOSPITAL", "ALBANY"),
    ("CITYMD 34TH STREET URGENT CARE", "NEW YORK"),
    ("KINGS COUNTY HOSPITAL CENTER", "BROOKLYN"),
    ("WESTCHESTER MEDICAL CENTER", "VALHALLA"),
    ("ERIE COUNTY MEDICAL CENTER", "BUFFALO"),
    ("STATEN ISLAND UNIVERSITY HOSPITAL", "STATEN ISLAND"),
    ("NORTH SHORE UNIVERSITY HOSPITAL", "MANHASSET"),
    ("NYS DRIVE-THRU TEST SITE JONES BEACH", "WANTAGH"),
    ("STRONG MEMORIAL HOSPITAL", "ROCHESTER"),
    ("UPSTATE UNIVERSITY HOSPITAL", "SYRACUSE"),
    ("ALBANY MEDICAL CENTER", "ALBANY"),
    ("JACOBI | NORTH CENTRAL BRONX", "BRONX"),
    ("SMITH | JONES FAMILY PRACTICE", "YONKERS"),
    ("HARLEM \"UPTOWN\" HEALTH CENTER", "NEW YORK"),
    ("MONTEFIORE MEDICAL CENTER", "BRONX"),
    ("NYU LANGONE HEALTH", "NEW YORK"),
    ("MAIMONIDES MEDICAL CENTER", "BROOKLYN"),
    ("PHARMACY 2 U TESTING", "FLUSHING"),
];

/// `OBXLOCALTESTCODE`, `OBXLOCALTESTDESC`.
pub(crate) static LOCAL_TESTS: &[(&str, &str)] = &[
    ("139900", "SARS-CoV-2, NAA"),
    ("COVID19", "SARS-CoV-2 RNA, QL RT PCR"),
    ("9500", "SARS CoV 2 RNA PCR, NP/OP"),
    ("CVRNA", "COVID-19 PCR (Cepheid Xpert Xpress)"),
    ("49365", "2019 nCoV Real-Time RT-PCR"),
    ("SARS2AG", "SARS-CoV-2 Antigen, Rapid"),
];

/// `OBXLOINCCODE`, `OBXLOINCDESC`.
pub(crate) static LOINCS: &[(&str, &str)] = &[
    ("94534-5", "SARS-CoV-2 RdRp Resp Ql NAA+probe"),
    ("94316-7", "2019-nCoV N XXX Ql NAA N2"),
    ("94309-2", "SARS-CoV-2 RNA XXX Ql NAA+probe"),
    ("94558-4", "SARS-CoV-2 Ag Resp Ql IA.rapid"),
    ("94759-8", "SARS-CoV-2 RNA Nph Ql NAA+probe"),
    ("94500-6", "SARS-CoV-2 RNA Resp Ql NAA+probe"),
    (
        "94309-2",
        "SARS-CoV-2 (COVID-19) RNA [Presence] in Unspecified specimen by NAA with probe detection",
    ),
    (
        "94558-4",
        "SARS-CoV-2 (COVID-19) Ag [Presence] in Respiratory specimen by Rapid immunoassay",
    ),
];

/// `OBXOBSERVATIONRESULTTEXT`, `OBXOBSERVATIONRESULTTEXTSHORT`, `OBXSNOMEDCODE`, `OBXSNOMEDDESC`.
pub(crate) static RESULTS: &[(&str, &str, &str, &str)] = &[
    ("POSITIVE", "POS", "10828004", "Positive (qualifier value)"),
    (
        "Detected (qualifier value)",
        "Detected",
        "260373001",
        "Detected (qualifier value)",
    ),
    (
        "SARS-CoV-2 RNA DETECTED",
        "DETECTED",
        "260373001",
        "Detected (qualifier value)",
    ),
    (
        "Positive (qualifier value)",
        "Positive",
        "10828004",
        "Positive (qualifier value)",
    ),
];

pub(crate) static SPECIMENS: &[&str] = &[
    "NASOPHARYNX",
    "Swab from nasal sinus",
    "Nasopharyngeal swab",
    "Upper respiratory specimen",
    "Anterior nares swab",
    "NASAL",
    "SALIVA",
    "Oropharyngeal swab",
];

pub(crate) static EMPLOYERS: &[&str] = &[
    "SELF EMPLOYED",
    "NYC DEPARTMENT OF EDUCATION",
    "MTA NEW YORK CITY TRANSIT",
    "NEW YORK-PRESBYTERIAN HOSPITAL",
    "AMAZON FULFILLMENT CENTER",
    "SMITH | JONES LLP",
    "RETIRED",
    "UNEMPLOYED",
];

pub(crate) static JOB_TITLES: &[&str] = &[
    "NURSE",
    "TEACHER",
    "BUS OPERATOR",
    "WAREHOUSE ASSOCIATE",
    "PARALEGAL",
    "HOME HEALTH AIDE",
    "CASHIER",
    "",
];

/// `PIDSCHOOLNAME`, `PIDSCHOOLDISTRICT`, `PIDSCHOOLCODE`.
pub(crate) static SCHOOLS: &[(&str, &str, &str)] = &[
    (
        "BRONX HIGH SCHOOL OF SCIENCE",
        "NYC GEOG DIST #10 - BRONX",
        "321000011445",
    ),
    (
        "P.S. 321 WILLIAM PENN",
        "NYC GEOG DIST #15 - BROOKLYN",
        "331500010321",
    ),
    (
        "STUYVESANT HIGH SCHOOL",
        "NYC GEOG DIST # 2 - MANHATTAN",
        "310200010475",
    ),
    ("ITHACA HIGH SCHOOL", "ITHACA CITY SD", "610600010006"),
    (
        "BUFFALO ACADEMY FOR VISUAL AND PERFORMING ARTS",
        "BUFFALO CITY SD",
        "140600010192",
    ),
];

pub(crate) static SCHOOL_JOB_CLASSES: &[&str] = &["STUDENT", "TEACHER", "STAFF", "VISITOR"];
