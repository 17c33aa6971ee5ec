/* nothing here in this program */
int lib_unused_marker;
