/* Fee schedule in basis points, one per customer tier. */
const int fee_bps[4] = { 250, 200, 150, 100 };
